"""Benchmarks that ship with the package (``rt-physio bench …``); ``benchmarks/`` holds thin scripts around them."""
