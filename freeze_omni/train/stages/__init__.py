"""One file per training stage; each defines its module (forward -> loss), batch plan and evaluation."""
