"""An example of a user's own package for disentangle-study: ``byo.models`` (a family),
``byo.data`` (a dataset) and ``byo.elsewhere`` (an encoder trained outside any study)."""
