"""What a run reads: corpora, tokenizers, token shards and the built-in story corpus."""
