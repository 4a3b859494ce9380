"""Image generation and editing (OpenAI's ``/v3/images/generations`` and ``/v3/images/edits``): the requests declared
(:mod:`.schema`), uploads decoded and checked (:mod:`.inputs`), the model and its limits (:mod:`.model`), and the node
that runs the jobs in the image engine (:mod:`.calculator`)."""
