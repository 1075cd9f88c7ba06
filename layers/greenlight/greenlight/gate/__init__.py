"""The health gate: observe a candidate, check it through the edge, promote or roll back."""
