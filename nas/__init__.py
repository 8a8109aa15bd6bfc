"""mobilebert-nas: search the MobileBERT design space for compact, fast BERT models."""

from nas.candidate import Candidate

__all__ = ["Candidate"]
__version__ = "0.1.0"
