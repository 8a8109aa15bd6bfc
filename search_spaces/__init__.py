"""Search spaces over the MobileBERT design: the YAML format, its validation and sampling."""

from search_spaces.space import (Constraints, Dimension, RandomSuggester, SearchSpace, builtin_spaces,
                                 load_space, parse_space)

__all__ = ["Constraints", "Dimension", "RandomSuggester", "SearchSpace", "builtin_spaces", "load_space",
           "parse_space"]
