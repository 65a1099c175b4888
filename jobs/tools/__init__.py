"""Operator tools: status, report, sample corpus, benchmark download."""
