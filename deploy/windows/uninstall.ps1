#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Removes the Mamut agent's Windows service; keeps the configuration, state and logs unless
    -RemoveData is given.

.DESCRIPTION
    powershell -ExecutionPolicy Bypass -File .\uninstall.ps1 [-RemoveData]

    The service is stopped first (in-flight orders are finished and acknowledged; anything not
    yet acknowledged stays queued in the relay for the next agent). -RemoveData also deletes
    -DataDir (agent.toml with the token and the SQL password, the state file, the logs):
    revoke the agent's token on the relay too (`relay agent revoke`).
#>
[CmdletBinding()]
param(
    [string]$InstallDir = "$env:ProgramFiles\MamutAgent",
    [string]$DataDir = "$env:ProgramData\MamutAgent",
    [string]$ServiceName = "MamutAgent",
    [switch]$RemoveData
)

$ErrorActionPreference = "Stop"
Set-StrictMode -Version Latest

$agentExe = Join-Path $InstallDir "agent.exe"
if (Get-Service -Name $ServiceName -ErrorAction SilentlyContinue) {
    if (-not (Test-Path $agentExe)) {
        Write-Host "uninstall.ps1: $agentExe is missing; removing the service with sc.exe" -ForegroundColor Yellow
        & sc.exe stop $ServiceName | Out-Host
        & sc.exe delete $ServiceName | Out-Host
    } else {
        & $agentExe service uninstall --name $ServiceName | Out-Host
        if ($LASTEXITCODE -ne 0) {
            Write-Host "uninstall.ps1: agent service uninstall failed (exit $LASTEXITCODE); see the message above" -ForegroundColor Red
            exit 1
        }
    }
} else {
    Write-Host "the service $ServiceName is not installed"
}
if (Test-Path $InstallDir) { Remove-Item -Recurse -Force $InstallDir }
if ($RemoveData -and (Test-Path $DataDir)) {
    Remove-Item -Recurse -Force $DataDir
    Write-Host "removed $DataDir; revoke the agent's token on the relay: relay agent revoke <agent id>"
} else {
    Write-Host "kept $DataDir (configuration, state, logs)"
}
