"""Every stage as a declaration over the runner (:mod:`vecpipe.pipeline.runner`): one module per
stage, each a dataclass naming its inputs, the parameters it records and its work. The command line
(:mod:`vecpipe.cli`) and the Python API (:mod:`vecpipe.api`) both run them through the runner."""
