# views (being filled in)
