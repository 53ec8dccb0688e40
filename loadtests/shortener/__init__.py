"""Load profiles and the ceiling app for the shortener benchmark (``python -m loadtests.shortener_bench``)."""
