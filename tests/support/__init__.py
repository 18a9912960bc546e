"""Plain helpers of the tests, one module per room of the package (see ``tests/conftest.py``)."""
