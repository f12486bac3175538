"""Dataset: generation, storage, loading, viewing and export of tactile-action samples."""
