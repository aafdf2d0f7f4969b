"""The shipped default model (default.safetensors), installed as package data."""
