"""Recording the trajectory of a training library's run: `lcaflow.integrations.hf` (the Hugging Face
Trainer) and `lcaflow.integrations.lightning` (Lightning). Each imports its library when imported itself:
`import lcaflow` needs neither (docs/integrations.md)."""
