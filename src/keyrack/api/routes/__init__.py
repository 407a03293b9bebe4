"""Management routes (FastAPI); the verify path lives outside FastAPI for speed."""
