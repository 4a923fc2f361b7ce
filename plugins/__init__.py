"""dicombox's built-in service plugins, each found through the ``dicombox`` entry points."""
