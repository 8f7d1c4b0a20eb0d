"""Fixtures of the GPU tests."""
import _emulator
import pytest

import condnn.gpu


@pytest.fixture(params=["emulated", "device"])
def gpu(request, monkeypatch):
    """Runs a test twice: on the host emulation of the kernels (whose own array type makes
    the layers take their GPU paths), and on a real GPU where PyCUDA and one are present;
    each is skipped, with the reason, where it cannot run."""
    if request.param == "emulated":
        reason = _emulator.unavailable_reason()
        if reason is not None:
            pytest.skip(reason)
        _emulator.patch(monkeypatch)
    elif not condnn.gpu.available():
        pytest.skip(condnn.gpu.unavailable_reason())
    return request.param
