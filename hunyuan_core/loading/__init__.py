"""Reading a model from disk into a `LoadedPipeline`, and the one-model cache a host application keeps."""
