"""Device checks and the frame format between the processes."""

import pytest

from ovserve.engine.worker import check_device


@pytest.mark.parametrize("device", ["CPU", "AUTO", "AUTO:CPU", "HETERO:CPU", "GPU.0"])
def test_devices_that_exist_pass(device):
    check_device(device, ["CPU", "GPU.0"])


@pytest.mark.parametrize(("device", "missing"), [("GPU", "GPU"), ("NPU", "NPU"), ("HETERO:GPU,CPU", "GPU")])
def test_a_missing_device_names_the_devices_there_are(device, missing):
    with pytest.raises(ValueError, match=rf"device '{device}' is not available: {missing} not found; this machine has CPU"):
        check_device(device, ["CPU"])

