"""One module per pipeline stage: its declaration and its transform."""
