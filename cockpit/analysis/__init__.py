"""Turning sets of runs into answers: scaling-law fits (and, to come, learning-rate fits and
comparisons). Torch-free: everything here reads what runs wrote."""
