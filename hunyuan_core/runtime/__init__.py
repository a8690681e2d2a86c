"""What a generation does with a loaded model: encode prompts, sample latents, decode and encode video,
with progress, recovery after failures and a memory estimate."""
