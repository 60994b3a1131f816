# Signing in and out, and one's own language.
login-title = Sign in
login-username = Username
login-password = Password
login-submit = Sign in
login-failed = Wrong username or password.
login-throttled = Too many failed sign-ins. Try again in { $minutes } minutes.
login-bad-form = The sign-in form could not be read. Reload the page and try again.
language-name = English
language-label = Language
language-save = Change language
login-cross-site = This sign-in was sent from another site. Open the console's own sign-in page and try again.
