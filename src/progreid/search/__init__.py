"""progreid.search: a gallery index of embeddings on disk and ranked queries against it.

``index`` (features, file names, identities; FAISS for large galleries), ``ann`` (the FAISS IVF
index and its recall check), ``ranking`` (exact top-k, re-ranking), ``embed`` (images ->
embeddings as evaluation computes them), ``picture`` (a PNG of ranked lists).
"""
