"""glassgpt: a GPT you can build, train, run and look inside on your own laptop."""

__version__ = "0.1.0"
