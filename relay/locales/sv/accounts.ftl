# accounts (being filled in)
