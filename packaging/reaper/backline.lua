--[[
Backline for REAPER (ReaScript, Lua 5.3/5.4 as bundled with REAPER 6/7).

  * With a time selection: sends it to Backline as /backline/region <start_s> <end_s> <bpm> <num> <den>
    (and /backline/generate <engine>), then waits for the take Backline writes and imports it at the
    edit cursor on the selected track.
  * Without a time selection: imports the newest take under TAKES_DIR at the edit cursor.

Backline's one take writer (backline.engines.core.takes) writes each take as ENGINE_seedN.wav (+ .mid) with
its report ENGINE_seedN.json, which opens with a flat "daw" block:
  "daw": {"version": 1, "audio": "bass_seed3.wav", "midi": "bass_seed3.mid", "sample_rate": 48000,
          "start_sample": ..., "start_seconds": ..., "start_bar": ..., "start_quarters": ..., "bpm": ...,
          "meter": [4, 4], "written": <unix time>, ...}
File names are relative to the report. TAKES_DIR is searched, and each folder in it one level down (the
desktop app writes every job into its own folder under SESSION/takes/). Set PLACE_AT_TAKE_BAR = true to
import at the position the take was generated for instead of the cursor (the positions are on the DAW's
timeline when Backline captured the mix live from REAPER).

Sending OSC: REAPER's Lua has no UDP, so the script uses LuaSocket when it is installed (e.g. via
ReaPack "mavriq-lua-sockets"), else liblo's `oscsend` (Linux: apt install liblo-tools; macOS: brew install
liblo), else it says what to install. Install: Actions > Show action list > New action > Load ReaScript.
--]]

local HOST, PORT = "127.0.0.1", 9000
local ENGINE = "bass"
local HOME = os.getenv("HOME") or os.getenv("USERPROFILE") or "."
local TAKES_DIR = BACKLINE_TAKES_DIR
  or ((os.getenv("BACKLINE_SESSION_DIR") or (HOME .. "/Music/Backline/Session")) .. "/takes")
local PLACE_AT_TAKE_BAR = BACKLINE_PLACE_AT_TAKE_BAR or false
local WAIT_SECONDS = 600

-- OSC encoding (strings padded to 4 bytes, big-endian float32 / int32) -------------------------------
local function osc_string(s)
  s = s .. "\0"
  return s .. string.rep("\0", (4 - #s % 4) % 4)
end

local function osc_message(address, types, ...)
  local args, parts = { ... }, { osc_string(address), osc_string("," .. types) }
  for i = 1, #types do
    local t, v = types:sub(i, i), args[i]
    if t == "f" then parts[#parts + 1] = string.pack(">f", v)
    elseif t == "i" then parts[#parts + 1] = string.pack(">i4", math.floor(v))
    elseif t == "s" then parts[#parts + 1] = osc_string(v) end
  end
  return table.concat(parts)
end

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function send(address, types, ...)
  local ok, socket = pcall(require, "socket")
  if ok and socket then
    local udp = socket.udp()
    udp:sendto(osc_message(address, types, ...), HOST, PORT)
    udp:close()
    return true
  end
  local cmd = { "oscsend", HOST, tostring(PORT), address, types }
  for _, v in ipairs({ ... }) do cmd[#cmd + 1] = shell_quote(v) end
  if reaper.ExecProcess then
    local out = reaper.ExecProcess(table.concat(cmd, " "), 5000)
    if out and out:match("^0\n") then return true end
  end
  reaper.ShowMessageBox("Could not send OSC to Backline.\nInstall LuaSocket (ReaPack) or liblo's oscsend.",
    "Backline", 0)
  return false
end

-- Takes --------------------------------------------------------------------------------------------
local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

-- The take a Backline report describes: its "daw" block's fields, file names made absolute. nil if the
-- JSON is not a take report (an analysis report, a preset, anything else).
local function read_take(path)
  local text = read_file(path)
  local block = text and text:match('^%s*{%s*"daw"%s*:%s*(%b{})')
  if not block then return nil end
  local folder = path:match("^(.*)[/\\][^/\\]*$") or "."
  local function str(key) return block:match('"' .. key .. '"%s*:%s*"([^"]*)"') end
  local function num(key) return tonumber(block:match('"' .. key .. '"%s*:%s*([%-%d%.eE+]+)')) end
  local take = { json = path, audio = str("audio"), midi = str("midi"), written = num("written") or 0,
                 start_seconds = num("start_seconds"), start_bar = num("start_bar"), bpm = num("bpm") }
  if not (take.audio or take.midi) then return nil end
  if take.audio then take.audio = folder .. "/" .. take.audio end
  if take.midi then take.midi = folder .. "/" .. take.midi end
  return take
end

local function takes_in(folder, found)
  local i = 0
  while true do
    local name = reaper.EnumerateFiles(folder, i)
    if not name then break end
    if name:match("%.json$") then
      local take = read_take(folder .. "/" .. name)
      if take then found[#found + 1] = take end
    end
    i = i + 1
  end
end

local function newest_take()
  local found = {}
  takes_in(TAKES_DIR, found)
  local i = 0
  while true do  -- one level down: the desktop app's job folders
    local sub = reaper.EnumerateSubdirectories(TAKES_DIR, i)
    if not sub then break end
    takes_in(TAKES_DIR .. "/" .. sub, found)
    i = i + 1
  end
  local best = nil
  for _, take in ipairs(found) do
    if best == nil or take.written > best.written then best = take end
  end
  return best
end

local function import(take)
  local track = reaper.GetSelectedTrack(0, 0) or reaper.GetLastTouchedTrack()
  if not track then
    reaper.InsertTrackAtIndex(reaper.CountTracks(0), true)
    track = reaper.GetTrack(0, reaper.CountTracks(0) - 1)
  end
  reaper.SetOnlyTrackSelected(track)
  reaper.Undo_BeginBlock()
  if PLACE_AT_TAKE_BAR and take.start_seconds then
    reaper.SetEditCurPos(take.start_seconds, false, false)
  end
  local cursor = reaper.GetCursorPosition()
  if take.audio then
    reaper.InsertMedia(take.audio, 0)  -- 0: onto the selected track at the edit cursor
  end
  if take.midi then
    reaper.SetEditCurPos(cursor, false, false)
    reaper.InsertMedia(take.midi, take.audio and 1 or 0)  -- 1: onto a new track (under the audio)
  end
  reaper.Undo_EndBlock("Backline: import " .. (take.audio or take.midi):match("[^/\\]*$"), -1)
  reaper.UpdateArrange()
  return true
end

-- Main ---------------------------------------------------------------------------------------------
local start_s, end_s = reaper.GetSet_LoopTimeRange(false, false, 0, 0, false)
if end_s > start_s then
  local num, den, bpm = reaper.TimeMap_GetTimeSigAtTime(0, start_s)
  local before = newest_take()
  if send("/backline/region", "fffii", start_s, end_s, bpm, num, den) then
    send("/backline/generate", "s", ENGINE)
    local deadline, next_look = reaper.time_precise() + WAIT_SECONDS, 0
    local function wait()
      local now = reaper.time_precise()
      if now >= next_look then  -- read the reports twice a second, not on every defer tick
        next_look = now + 0.5
        local take = newest_take()
        if take and (before == nil or take.json ~= before.json or take.written ~= before.written) then
          import(take)
          return
        end
      end
      if now < deadline then reaper.defer(wait) end
    end
    reaper.defer(wait)
  end
else
  local take = newest_take()
  if not (take and import(take)) then
    reaper.ShowMessageBox("No Backline take in " .. TAKES_DIR .. " yet.\nMake a time selection and run this "
      .. "again to send it to Backline.", "Backline", 0)
  end
end
