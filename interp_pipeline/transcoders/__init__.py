"""Transcoders and attribution graphs (Dunefsky et al. 2024; Ameisen et al. 2025, circuit-tracer's method).

config (the three stages' schemas), architectures (SAELens training SAEs with the MLP output as
target; SAELens inference transcoders, TopK ones registered), training (every layer in one pass),
evaluation (per layer, and CE loss spliced in), storage (TranscoderSet and its codec), replacement
(the frozen replacement model with error nodes), attribution (the adjacency by batched backward
passes), graph (influence pruning, replacement and completeness scores), export (circuit-tracer's
graph JSON), page (the HTML page), tracing (the attribution_graph stage's work).
"""
