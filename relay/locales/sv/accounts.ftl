# Inloggning, utloggning och det egna språket.
login-title = Logga in
login-username = Användarnamn
login-password = Lösenord
login-submit = Logga in
login-failed = Fel användarnamn eller lösenord.
login-throttled = För många misslyckade inloggningar. Försök igen om { $minutes } minuter.
login-bad-form = Inloggningsformuläret kunde inte läsas. Ladda om sidan och försök igen.
language-name = Svenska
language-label = Språk
language-save = Byt språk
login-cross-site = Inloggningen skickades från en annan webbplats. Öppna konsolens egen inloggningssida och försök igen.
