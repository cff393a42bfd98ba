"""Questions wing: test sets made from a corpus (generate-questions) and the review that makes them trustworthy."""
