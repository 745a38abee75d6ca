"""Training: one small loop shared by every stage; each stage only defines batch -> loss."""
