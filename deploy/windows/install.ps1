#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Installs (or upgrades) the Mamut agent as a Windows service on the Mamut server.

.DESCRIPTION
    Run from the unpacked release folder, in an elevated PowerShell:

        powershell -ExecutionPolicy Bypass -File .\install.ps1

    1. creates -DataDir (C:\ProgramData\MamutAgent) with its logs\ and state\ folders, only
       Administrators and SYSTEM allowed in (agent.toml holds the relay token and the SQL
       password), and agent.toml from agent.example.toml when there is none yet (an existing
       agent.toml is never overwritten); then stops so that it can be filled in;
    2. runs `agent check` with the new agent.exe and stops if any check failed (an installed
       service keeps running meanwhile);
    3. stops an installed service (upgrade) and copies agent.exe to -InstallDir
       (C:\Program Files\MamutAgent);
    4. installs the service (`agent service install`) unless it is installed, and grants its
       account read access to -DataDir and write access to its logs\ and state\ folders only;
    5. starts the service and shows its status.

    Running it again upgrades in place; the configuration, the state file and the logs are kept,
    and the account the installed service runs as is kept.

.PARAMETER Account
    The account the service runs as. Default: the service's own virtual account
    "NT SERVICE\<ServiceName>" (no password; on a local SQL Server it can be given a login:
    CREATE LOGIN [NT SERVICE\MamutAgent] FROM WINDOWS). Others: "LocalSystem",
    "NT AUTHORITY\NetworkService", or a domain account "DOMAIN\user" with -Credential (the
    account needs the "Log on as a service" right: secpol.msc, Local Policies, User Rights
    Assignment, or the domain's group policy). On an upgrade the installed service's account is
    kept unless -Account is given.

.PARAMETER Credential
    The password of a domain or local account (Get-Credential); -Account defaults to its user
    name. Not needed for virtual and built-in accounts.
#>
[CmdletBinding()]
param(
    [string]$InstallDir = "$env:ProgramFiles\MamutAgent",
    [string]$DataDir = "$env:ProgramData\MamutAgent",
    [string]$ServiceName = "MamutAgent",
    [string]$Account = "",
    [System.Management.Automation.PSCredential]$Credential = $null,
    [switch]$SkipCheck
)

$ErrorActionPreference = "Stop"
Set-StrictMode -Version Latest

function Fail([string]$message) {
    Write-Host ""
    Write-Host "install.ps1: $message" -ForegroundColor Red
    exit 1
}

function Step([string]$message) {
    Write-Host "==> $message" -ForegroundColor Cyan
}

# Runs an agent.exe with the given arguments; returns its exit code (its output goes to the
# console, so that the function's only output is the code).
function Invoke-Agent([string]$exe, [string[]]$arguments) {
    & $exe @arguments | Out-Host
    return $LASTEXITCODE
}

# The name icacls takes for a service account: well-known SIDs for the built-in accounts (their
# names are translated on non-English Windows), the computer's name for ".\user".
function Get-IcaclsPrincipal([string]$name) {
    switch -Regex ($name) {
        '^(NT AUTHORITY\\)?(LocalSystem|SYSTEM)$' { return "*S-1-5-18" }
        '^(NT AUTHORITY\\)?(LocalService|LOCAL SERVICE)$' { return "*S-1-5-19" }
        '^(NT AUTHORITY\\)?(NetworkService|NETWORK SERVICE)$' { return "*S-1-5-20" }
        '^\.\\(.+)$' { return "$env:COMPUTERNAME\$($Matches[1])" }
        default { return $name }
    }
}

$here = Split-Path -Parent $MyInvocation.MyCommand.Path
$sourceExe = Join-Path $here "agent.exe"
$example = Join-Path $here "agent.example.toml"
if (-not (Test-Path $sourceExe)) { Fail "agent.exe is not next to install.ps1 ($here): unpack the whole release zip and run install.ps1 from that folder" }
if (-not (Test-Path $example)) { Fail "agent.example.toml is not next to install.ps1 ($here): unpack the whole release zip" }

$InstallDir = [System.IO.Path]::GetFullPath($InstallDir)
$DataDir = [System.IO.Path]::GetFullPath($DataDir)
$agentExe = Join-Path $InstallDir "agent.exe"
$config = Join-Path $DataDir "agent.toml"
$logs = Join-Path $DataDir "logs"
$stateDir = Join-Path $DataDir "state"

$existing = Get-CimInstance -ClassName Win32_Service -Filter "Name='$ServiceName'"
if ($Account -eq "") {
    if ($null -ne $existing) { $Account = $existing.StartName }
    elseif ($null -ne $Credential) { $Account = $Credential.UserName }
    else { $Account = "NT SERVICE\$ServiceName" }
}

# --- 1. the data folder, only Administrators and SYSTEM (the service account is added once it
#        exists), and the configuration ---------------------------------------------------------
New-Item -ItemType Directory -Force -Path $DataDir | Out-Null
New-Item -ItemType Directory -Force -Path $logs | Out-Null
New-Item -ItemType Directory -Force -Path $stateDir | Out-Null
# Well-known SIDs, so that this works on Windows in any language: S-1-5-32-544 Administrators,
# S-1-5-18 SYSTEM.
Step "restricting $DataDir to Administrators and SYSTEM"
& icacls.exe $DataDir /inheritance:r /grant:r "*S-1-5-32-544:(OI)(CI)F" "*S-1-5-18:(OI)(CI)F" | Out-Null
if ($LASTEXITCODE -ne 0) { Fail "icacls could not set the permissions of $DataDir (exit $LASTEXITCODE)" }

$stateFile = Join-Path $stateDir "agent-state.json"
$spoolDir = Join-Path $stateDir "spool"
if (-not (Test-Path $config)) {
    # The change cursors go to the state folder, the one folder besides logs the service may
    # write to (a TOML literal string: backslashes as they are).
    $text = (Get-Content -Raw $example) -replace '(?m)^state_file = [^\r\n]*', "state_file = '$stateFile'"
    # The import writer's spool folder too (writer = "import").
    $text = $text -replace '(?m)^spool_dir = [^\r\n]*', "spool_dir = '$spoolDir'"
    # UTF-8 without a byte order mark (PowerShell 5.1's Set-Content -Encoding UTF8 writes one).
    [System.IO.File]::WriteAllText($config, $text, (New-Object System.Text.UTF8Encoding $false))
    Write-Host ""
    Write-Host "Created $config from the example." -ForegroundColor Yellow
    Write-Host "Fill in [relay] url and token (from 'relay agent create') and [mamut.sqlserver] (server, database, login),"
    Write-Host "then run install.ps1 again. Open it with: notepad `"$config`""
    exit 2
}
if (Select-String -Path $config -Pattern 'token = "eyJ\.\.\."' -Quiet) {
    Fail "$config still has the example token: put the token 'relay agent create' printed into [relay] token, then run install.ps1 again"
}
# The service may write only to logs\ and state\: the change cursors must be kept in state\.
$line = Select-String -Path $config -Pattern '^\s*state_file\s*=\s*["'']([^"'']+)["'']' | Select-Object -First 1
$configured = if ($null -ne $line) { $line.Matches[0].Groups[1].Value -replace '\\\\', '\' } else { "agent-state.json" }
$resolved = [System.IO.Path]::GetFullPath([System.IO.Path]::Combine($DataDir, $configured))
if (-not $resolved.StartsWith($stateDir + "\", [System.StringComparison]::OrdinalIgnoreCase)) {
    Fail "[watch] state_file in $config is $resolved, where the service may not write: set state_file = '$stateFile' and run install.ps1 again"
}
# The same for the import writer's spool, when orders go through Mamut's import.
if (Select-String -Path $config -Pattern '^\s*writer\s*=\s*["'']import["'']' -Quiet) {
    $line = Select-String -Path $config -Pattern '^\s*spool_dir\s*=\s*["'']([^"'']+)["'']' | Select-Object -First 1
    $configured = if ($null -ne $line) { $line.Matches[0].Groups[1].Value -replace '\\\\', '\' } else { "spool" }
    $resolved = [System.IO.Path]::GetFullPath([System.IO.Path]::Combine($DataDir, $configured))
    if (-not $resolved.StartsWith($stateDir + "\", [System.StringComparison]::OrdinalIgnoreCase)) {
        Fail "[mamut.import] spool_dir in $config is $resolved, where the service may not write: set spool_dir = '$spoolDir' and run install.ps1 again"
    }
}

# --- 2. agent check, with the new agent.exe, before anything is stopped ----------------------
if (-not $SkipCheck) {
    Step "agent check --config $config"
    # Relative paths in agent.toml are read from the folder it is in, as the service does.
    Push-Location $DataDir
    try { $code = Invoke-Agent $sourceExe @("check", "--config", $config) } finally { Pop-Location }
    if ($code -ne 0) {
        Fail "agent check failed (exit $code): fix what the [FAIL] lines above say (README: 'Installing the agent on the Mamut server'), then run install.ps1 again"
    }
}

# --- 3. the binary (an installed service is stopped first, and its process waited for) -------
if ($null -ne $existing -and $existing.State -ne "Stopped") {
    Step "stopping the service $ServiceName for the upgrade"
    $processId = $existing.ProcessId
    if ((Invoke-Agent $agentExe @("service", "stop", "--name", $ServiceName)) -ne 0) { Fail "could not stop the service $ServiceName; see the message above" }
    if ($processId -gt 0) { Wait-Process -Id $processId -Timeout 60 -ErrorAction SilentlyContinue }
}
Step "copying agent.exe to $InstallDir"
New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
Copy-Item -Force $sourceExe $agentExe
Copy-Item -Force $example (Join-Path $InstallDir "agent.example.toml")
$license = Join-Path $here "LICENSE"
if (Test-Path $license) { Copy-Item -Force $license (Join-Path $InstallDir "LICENSE") }

# --- 4. the service -------------------------------------------------------------------------
if ($null -eq $existing) {
    Step "installing the service $ServiceName (account $Account)"
    $arguments = @("service", "install", "--config", $config, "--name", $ServiceName, "--account", $Account)
    try {
        if ($null -ne $Credential) {
            # The password reaches agent.exe through an environment variable of this process
            # only, never on a command line (which other users can read).
            $env:MAMUT_AGENT_SERVICE_PASSWORD = $Credential.GetNetworkCredential().Password
            $arguments += @("--password-env", "MAMUT_AGENT_SERVICE_PASSWORD")
        }
        $code = Invoke-Agent $agentExe $arguments
    } finally {
        Remove-Item Env:\MAMUT_AGENT_SERVICE_PASSWORD -ErrorAction SilentlyContinue
    }
    if ($code -ne 0) { Fail "agent service install failed (exit $code); see the message above" }
} else {
    Step "the service $ServiceName is installed already (account $Account): upgraded in place"
}

# The service account reads the configuration and writes its state file and logs; nothing more.
$principal = Get-IcaclsPrincipal $Account
if ($principal -ne "*S-1-5-18") {
    Step "granting $Account read access to $DataDir, write access to its logs and state folders"
    & icacls.exe $DataDir /grant "${principal}:(OI)(CI)RX" | Out-Null
    if ($LASTEXITCODE -ne 0) { Fail "icacls could not grant $Account access to $DataDir (exit $LASTEXITCODE): is the account name right?" }
    foreach ($dir in @($logs, $stateDir)) {
        & icacls.exe $dir /grant "${principal}:(OI)(CI)M" | Out-Null
        if ($LASTEXITCODE -ne 0) { Fail "icacls could not grant $Account access to $dir (exit $LASTEXITCODE)" }
    }
}

# --- 5. start ---------------------------------------------------------------------------------
Step "starting the service $ServiceName"
if ((Invoke-Agent $agentExe @("service", "start", "--name", $ServiceName)) -ne 0) {
    Fail "the service did not start; its log is in $logs and the Windows Event Log (Application, source $ServiceName)"
}
Invoke-Agent $agentExe @("service", "status", "--name", $ServiceName) | Out-Null
Write-Host ""
Write-Host "Installed. Logs: $logs (and the Event Log, Application, source $ServiceName)." -ForegroundColor Green
Write-Host "Configuration: $config. After a change: agent service stop, then start (or Restart-Service $ServiceName)."
