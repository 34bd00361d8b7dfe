"""The self-correction protocol. Its home is ``scorebench.api.protocol`` (run_protocol, ProtocolConfig, the
instructions, ``grade``) and ``scorebench.api.types`` (Turn, Episode); this module keeps the old import path."""
from .api.protocol import (CODE_SELF_CORRECTION_INSTRUCTION, SAMPLE_SEP, SELF_CORRECTION_INSTRUCTION,  # noqa: F401
                           ProtocolConfig, grade, problem_id, run_protocol)
from .api.types import Completion, Episode, SamplingParams, Turn  # noqa: F401
