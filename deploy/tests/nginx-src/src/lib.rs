// Nothing to build: the manifest exists to fetch nginx-src.
