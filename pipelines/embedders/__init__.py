"""Embedders: sentence-transformers in process (local), an OpenAI-compatible endpoint (http), ONNX Runtime (onnx), and
index builds spread over Ray Data (ray_data)."""
