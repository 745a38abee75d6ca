"""Evaluation: reference ASR, error rates, reports."""
