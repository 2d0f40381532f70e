"""Settings shared by the models, the pipeline, the command line and the training scripts, in one torch-free module
(the command-line parsers import it without loading torch)."""

# Kinds of SSP-IR dual-prior branches: the paper's layout (whole transformers around SD's, the default) and the
# light one (one attention per branch inside SD's cross-attention layers). See docs/architecture.md.
BRANCH_TYPES = ("transformer", "attention")
