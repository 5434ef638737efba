"""The landing-folder source (Auto Loader semantics): listing and planning here, parsing in the engine."""
from .listing import FileEntry, list_files
from .read import CORRUPT, METADATA, RESCUED, output_schema
from .source import FORMATS, FileSource

__all__ = ["FileEntry", "FileSource", "FORMATS", "CORRUPT", "METADATA", "RESCUED", "list_files", "output_schema"]
