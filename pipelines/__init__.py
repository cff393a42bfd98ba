"""RAG building blocks: data, chunking, embedding, index, retrieval, rerank, prompts, LLM client, graph."""
