"""Small shared helpers: devices and dtypes, seeds, atomic file operations."""
