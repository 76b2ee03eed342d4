package android.app

import android.content.Context
import android.os.Bundle
import java.io.File

abstract class Activity : Context()

abstract class Application : Context() {
    open fun onCreate() {}
    val noBackupFilesDir: File get() = throw NotImplementedError()
    fun registerActivityLifecycleCallbacks(callback: ActivityLifecycleCallbacks) {}

    interface ActivityLifecycleCallbacks {
        fun onActivityCreated(activity: Activity, savedInstanceState: Bundle?)
        fun onActivityStarted(activity: Activity)
        fun onActivityResumed(activity: Activity)
        fun onActivityPaused(activity: Activity)
        fun onActivityStopped(activity: Activity)
        fun onActivitySaveInstanceState(activity: Activity, outState: Bundle)
        fun onActivityDestroyed(activity: Activity)
    }
}
