"""The speed levers every peer offers, through diffusers' own hooks and dispatcher: step caches, attention
backends, fp8 storage and regional compilation; each composes with group offloading and batching."""
