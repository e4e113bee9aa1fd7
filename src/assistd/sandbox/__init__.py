"""Sandboxes that run the code of code_interpreter. Kept free of imports: the launcher runs from here."""
