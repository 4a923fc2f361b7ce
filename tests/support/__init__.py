"""Helpers shared by the tests and the benchmarks: synthetic studies, a running box,
and the DCMTK peers."""
