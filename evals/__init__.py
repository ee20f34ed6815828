"""factory eval: benchmark scoring of a base model or a trained adapter."""
