"""Data: reading text (the built-in corpus, files, folders, globs) and its train/validation
split (`corpus`), the on-disk token cache (`token_cache`), and the windows a training step
reads (`batches`)."""
