# alerts (being filled in)
