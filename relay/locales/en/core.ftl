# The console's frame: navigation, common words. One file per area of the console; every
# message exists in each language (a unit test checks it).
app-name = Relay console
nav-overview = Overview
nav-orders = Orders
nav-failures = Failures
nav-shops = Shops and rules
nav-agents = Agents
nav-audit = Audit log
nav-language = Language
nav-logout = Sign out
signed-in-as = Signed in as { $user } ({ $role })
role-operator = operator
role-tenant_admin = tenant admin
role-tenant_viewer = tenant viewer
error-title = Something went wrong
error-back = Back to the overview
