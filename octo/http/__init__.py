"""HTTP/1.1 on httptools: one code path for every request."""
