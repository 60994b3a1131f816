# Konsolens ram: navigering, vanliga ord.
app-name = Reläkonsol
nav-overview = Översikt
nav-orders = Ordrar
nav-failures = Fel
nav-shops = Butiker och regler
nav-agents = Agenter
nav-audit = Granskningslogg
nav-language = Språk
nav-logout = Logga ut
signed-in-as = Inloggad som { $user } ({ $role })
role-operator = operatör
role-tenant_admin = kundadministratör
role-tenant_viewer = kundläsare
error-title = Något gick fel
error-back = Tillbaka till översikten
