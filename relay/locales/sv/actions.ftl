# actions (being filled in)
