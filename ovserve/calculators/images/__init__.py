"""Image generation and editing (OpenAI's ``/v3/images/generations`` and ``/v3/images/edits``): the requests declared
(:mod:`.schema`), uploads decoded and checked (:mod:`.inputs`), the model and its limits (:mod:`.model`), and the node
that runs the jobs in the image engine (:mod:`.calculator`)."""

from ovserve.calculators.images.schema import ImageGenerationRequest
from ovserve.endpoints import Endpoint

#: The generation's JSON body is documented in /openapi.json; an edit is a form of text fields, its image and mask.
ENDPOINTS = (Endpoint("/images/generations", ("image_generation",), ImageGenerationRequest),
             Endpoint("/images/edits", ("image_generation",), form=True, max_files=2))
