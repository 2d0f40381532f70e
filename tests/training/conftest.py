import pytest
from accelerate.state import AcceleratorState


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """Each training run in these tests starts its own Accelerator, as a new `accelerate launch` would."""
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
