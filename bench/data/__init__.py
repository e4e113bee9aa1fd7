"""The retrieval benchmark's corpus and its builder."""
