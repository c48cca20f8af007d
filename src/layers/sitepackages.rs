//! The site-packages layer: `uv pip install` for the TARGET platform into a
//! staging prefix, then mapped onto the base interpreter's real paths.
